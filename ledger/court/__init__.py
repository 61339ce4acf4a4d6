"""What a court and a defence expert receive: the court report (HTML and PDF), the
verification page that re-checks a bundle in the browser, and the CASE/UCO export.

Every output here is computed from a verified court bundle (``ledger.core.bundle``): the
verdict, the timeline and every name come from signed log entries and map proofs checked
against the checkpoint, never from the operator's tables. ``model`` and ``case_uco`` are
pure; ``i18n`` reads message catalogues; ``render`` and ``verify_page`` produce documents.
"""
