"""The operator's own API resource, for the runtime's client and cache."""

from __future__ import annotations

from api.v1alpha1 import groupversion as gv
from controller.runtime.resources import Resource

EXTERNALSECRETSCONFIGS = Resource(gv.GROUP, gv.VERSION, gv.PLURAL, gv.KIND, namespaced=False)
