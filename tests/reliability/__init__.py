"""Reliability under faults (issue #14): crashes, a full disk, a database that goes away,
load, and parser fuzzing.

``python -m tests.reliability crash --cycles N --backend sqlite|postgres --via
embedded|api [--seed S] [--json]`` runs the crash campaign (:mod:`.campaign`);
``python -m tests.reliability outage --cycles N`` stops and kills PostgreSQL under write
load through the API (:mod:`.outage`); ``python -m tests.reliability soak --minutes M``
holds the API at its measured capacity (:mod:`.soak`). The pytest files here run short
versions of everything so it cannot rot.
"""
