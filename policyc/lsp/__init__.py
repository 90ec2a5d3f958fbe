"""`policyc lsp`: a language server for .policy files (policyc/lsp/server.py), over stdio.

It needs the `lsp` extra (`pip install 'policyc[lsp]'`: pygls and lsprotocol); the rest of
policyc does not import this package.
"""
