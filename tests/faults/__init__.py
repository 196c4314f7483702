"""Fault scenarios of the old threaded numba/OpenMP code: processes, signals, environment, threads, autodiff.

Each scenario that could hang runs in a child interpreter with a timeout (see ``_child``),
so a hang fails one test and never the run.
"""
