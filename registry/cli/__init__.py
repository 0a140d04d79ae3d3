"""The ``registry`` command: deploy, hash, register, verify, revoke, inspect, manage roles.

Results go to stdout (one human line, or JSON with ``--json``); logs and errors to stderr.
Exit codes: 0 success / verified, 1 not verified or the operation failed, 2 usage or bad input.
Settings come from ``REGISTRY_*`` variables; the flags override them. Keys are never taken
on the command line (they would show in the process list): use REGISTRY_PRIVATE_KEY or a keystore.

    output    Output, the exit codes, flags -> Settings and chain client
    records   hash, register, verify, revoke, show, history, list
    delegate  sign-registration (offline, EIP-712), submit, cancel-nonce, nonce
    admin     chain, deploy, roles, admin
    runtime   train, serve, audit (the commands that need an extra, and the audit log check)
    evaluate  evaluate: re-run an anchored accuracy claim on test data (the [train] extra);
              --attest makes the measurement an evaluator attestation
    attest    attest, attest revoke: an evaluator's own measurement of a checkpoint
    oms       export-signature, import-signature: OpenSSF model-signing bundles (the [oms] extra)
    main      build_parser (the shared flags) and main (errors -> exit codes)
"""

from registry.cli.main import build_parser, main
from registry.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
