"""The black-box spec suite behind tests/e2e/api.py, one module per area of
the OCI distribution spec's conformance workflows (pull, push, content
discovery, content management), the data types (datatypes.py) and the
draft-spec features wharf is gaining (draft.py). common.py holds the check
helpers and counters. Run it through api.py."""
