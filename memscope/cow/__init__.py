"""Copy-on-write forensics: page classes, CPython heap parsing, causes, scheduled scans.

See docs/cow.md (scanning) and docs/cow-heap.md (heap parser). Import the modules directly:
memscope.cow.scan.scan_process, memscope.cow.heap.parse_heap, memscope.cow.cpython.
"""
