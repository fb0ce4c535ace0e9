"""A saved widget output shows a picture, never the widget's repr."""

from __future__ import annotations

from labkit.widgets.host import ApartmentPlanner, building_html
from labkit.widgets.static import StaticHTML, html_to_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_static_html_keeps_the_live_widget_and_adds_its_html_and_words() -> None:
    bundle = StaticHTML("<div><b>kernel</b> Linux<br>a &amp; b</div>")._repr_mimebundle_()
    assert WIDGET_MIME in bundle
    assert bundle["text/html"] == "<div><b>kernel</b> Linux<br>a &amp; b</div>"
    assert bundle["text/plain"] == "kernel Linux\na & b"


def test_the_planner_saves_a_building_not_its_repr() -> None:
    planner = ApartmentPlanner(2, 4096, guests=3, vcpus=1, memory_mib=1024)
    bundle = planner._repr_mimebundle_()
    assert WIDGET_MIME in bundle
    assert "children=" not in bundle["text/plain"] and "IntSlider" not in bundle["text/html"]
    assert "<table class='labkit-building'" in bundle["text/html"] and "guests = 3" in bundle["text/html"]
    assert "<svg" not in bundle["text/html"]  # JupyterLab strips SVG from untrusted (freshly cloned) notebooks
    assert bundle["text/plain"].startswith("the building: 2 CPUs, 4096 MiB; 3 apartments")


def test_the_building_shows_overcommit_as_windows_past_the_wall_and_floors_above_the_roof() -> None:
    planner = ApartmentPlanner(2, 4096, guests=1, vcpus=1, memory_mib=1024)
    fits = building_html(planner.plan)
    assert "#e53935" not in fits and "RAM ends here" not in fits and ">roof<" in fits
    planner.vcpus.value, planner.guests.value, planner.memory.value = 3, 6, 1024
    crowded = building_html(planner.plan)
    assert crowded.count("background-color:#e53935") == 6  # one vCPU per flat has no CPU of its own
    assert "RAM ends here" in crowded
    assert crowded.index("flat 6") < crowded.index("RAM ends here") < crowded.index("flat 4")  # floors over the roof
    assert planner.drawing.value.count("labkit-building") == 1  # the live drawing is the same building


def test_html_to_text_drops_markup_and_blank_lines() -> None:
    assert html_to_text("<table><tr><th>a</th><td>1</td></tr><tr><td>b</td></tr></table>") == "a 1\nb"


def test_the_types_picture_draws_four_stacks_on_hardware_without_a_widget() -> None:
    from labkit.widgets.host import TYPE_STACKS, hypervisor_types_picture

    markup = hypervisor_types_picture().data
    assert "labkit-type-stacks" in markup and "ipywidgets" not in markup
    assert [title.split(" ")[0] for title, _ in TYPE_STACKS] == ["Type", "Type", "KVM:", "QEMU"]
    assert all(layers[-1][1] == "hw" and layers[0][1] == "vm" for _, layers in TYPE_STACKS)
    assert all(title in markup for title, _ in TYPE_STACKS)
