"""A stand-in for the parts of SGLang that a HiCache storage backend imports,
for tests where SGLang itself cannot be installed. Only on sys.path in
tests/engine/test_sglang.py; the module paths are SGLang's own."""
