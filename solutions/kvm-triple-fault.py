from labkit.exercises import triple_fault as _debug

# Walk cr2 (the address the page fault could not reach) through the tables: the first entry on the way without
# its present bit is the broken one.  No page-table entry missing: the segment load's descriptor (GDT[0x10 >> 3]).
_crash = _debug.crash()
_entries = {(e.table, e.index): e for e in _crash.entries}
_walk = [("PML4", _crash.cr2 >> 39 & 511), ("PDPT", _crash.cr2 >> 30 & 511), ("PD", _crash.cr2 >> 21 & 511),
         ("PT", _crash.cr2 >> 12 & 511)]
_wrong = next((_entries[k] for k in _walk if k in _entries and not _entries[k].present), _entries[("GDT", 2)])
my_fix = (_wrong.table, _wrong.index, _wrong.value | _debug.PRESENT[_wrong.table])
