"""Self-containedness of a machine-readable document (OpenAPI, AsyncAPI): every `$ref`
points into the document and resolves there, as a code generator given the file alone
(no network, no base URL to fetch from) would resolve it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import referencing.exceptions
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:push-service:document"


def refs(value: Any) -> Iterator[str]:
    """Every `$ref` string in the document, depth first."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def pointed(document: Any, ref: str) -> Any:
    """The value a local `#/a/b` reference names (RFC 6901), or KeyError/IndexError."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    value = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


def assert_self_contained(document: dict[str, Any]) -> int:
    """Assert every `$ref` is local and resolves inside `document`; the number of them."""
    found = list(refs(document))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    # A Registry without `retrieve` never fetches: a reference outside fails to resolve.
    registry: Registry[Any] = Registry().with_resource(BASE, resource)
    resolver = registry.resolver(base_uri=BASE)
    for ref in found:
        assert ref.startswith("#/"), f"non-local $ref {ref!r}"
        target = pointed(document, ref)
        assert isinstance(target, dict), f"{ref} names {target!r}, not an object"
        try:
            resolved = resolver.lookup(ref).contents
        except referencing.exceptions.Unresolvable as exc:
            raise AssertionError(f"{ref} does not resolve without fetching: {exc}") from exc
        assert resolved == target, ref
    return len(found)
