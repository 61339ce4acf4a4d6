"""Reliability under faults (issue #14): the crash campaign, disk-full and parser fuzzing.

``python -m tests.reliability crash --cycles N --backend sqlite|postgres --via
embedded|api [--seed S] [--json]`` runs the crash campaign (:mod:`.campaign`); the
pytest files here run short versions of everything so it cannot rot.
"""
