"""Helpers shared by the test modules: clocks, waits, ports, tiny models, the emulator.

Importable as ``support`` (pyproject puts ``tests/`` on pytest's ``pythonpath``), e.g.
``from support.clocks import FakeClock``. Nothing here is a test; nothing here is collected.
"""
