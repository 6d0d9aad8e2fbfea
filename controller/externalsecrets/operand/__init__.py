"""The external-secrets operand: what the operator installs into the operand namespace, and its reconcile part.

Pure builders (one module per kind) turn the spec into objects from the YAML assets (:mod:`.desired`); the
part (:mod:`.part`) applies them with server-side apply, prunes what the spec no longer asks for, and reports
Deployment availability and cert-manager problems without ever stopping the other parts.
"""
