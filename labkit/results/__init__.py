"""``labkit run``'s results as data: declarations, context, the tidy table, plots and shareable files.

- :mod:`.declaration`: what a notebook declares (parameters, the results each drives, units)
- :mod:`.context`: the host kind, CPU, kernel and versions that make runs comparable
- :mod:`.table`: runs → one pandas table (CSV and JSON lines), medians and the text summary
- :mod:`.plot`: a sweep's panels per result, a class's distribution per host kind
- :mod:`.share`: result files (``labkit run --export``), read back and merged

The modules import pandas and matplotlib only when called: ``labkit --help`` stays fast.
"""
