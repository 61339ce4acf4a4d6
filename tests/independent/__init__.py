"""An outsider's verifier of court bundles (docs/bundle.md), and the tests that make it and
``ledger.core.bundle.verify_bundle`` agree on real and mutated bundles."""
