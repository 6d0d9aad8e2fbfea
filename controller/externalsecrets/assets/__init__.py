"""YAML manifests of the external-secrets operand, one object per file (the Go operator's bindata).

They hold what never depends on the spec: names, RBAC rules, ports, probes, security contexts and webhook rules.
``controller.externalsecrets.operand`` loads them and sets what does depend on the spec (namespace, images,
args, scheduling, proxy, certificates, labels and the owner reference). The placeholder namespace is
``external-secrets``; code always overwrites it. Shipped as package data (``*.yaml``).
"""
