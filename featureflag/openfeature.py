"""OpenFeature: per-request overrides and the ``Feature-Flags`` report for code written
against the OpenFeature SDK (``pip install featureflag[openfeature]``).

:class:`FeatureFlagProvider` is an OpenFeature provider. Alone, it evaluates in process:
a flag resolves to the current request's override (from the token the middleware
verified), else to the default the caller passed. Given another provider
(LaunchDarkly, flagd, Unleash, ...), it wraps it: the override wins, everything else
is the inner provider's answer. Either way each evaluation joins the request's
``Feature-Flags`` report with its source, so the browser extension and fork URLs work
for OpenFeature code too::

    from openfeature import api
    from featureflag.openfeature import FeatureFlagProvider

    api.set_provider(FeatureFlagProvider(FlagdProvider()))  # or FeatureFlagProvider()
    client = api.get_client()
    client.get_string_value("new-lp", "a")

See docs/ofrep.md ("OpenFeature in Python").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, FeatureProvider, Metadata
from openfeature.track import TrackingEventDetails

from ._registry import lookup
from ._scope import Scope, _Rejected, current_scope
from .ofrep import variant

__all__ = ["FeatureFlagProvider"]

_Object = Sequence[FlagValueType] | Mapping[str, FlagValueType]
_Resolve = Callable[[str, Any, EvaluationContext | None], FlagResolutionDetails[Any]]
_KINDS: dict[type, str] = {bool: "boolean", str: "string", int: "integer", float: "float"}


def _problem(key: str, value: object, kind: type) -> str | None:
    """Why override *value* cannot answer an OpenFeature *kind* flag, or None."""
    flag = lookup(key)
    if flag is not None:  # declared in code too: its own type rules
        return flag.problem(value)
    if kind in (bool, str) and type(value) is kind:
        return None
    wanted = _KINDS.get(kind, "object")
    shown = f"the string {value!r}" if isinstance(value, str) else f"{type(value).__name__}"
    fix = "send true or false" if kind is bool else "send a string"
    if kind not in (bool, str):
        fix = "featureflag overrides are booleans or strings only"
    return (
        f"Flag {key!r} is evaluated as an OpenFeature {wanted} flag but the override "
        f"is {shown}; {fix}"
    )


def _override(scope: Scope | None, key: str, kind: type) -> FlagResolutionDetails[Any] | None:
    """The override's resolution, or None (recording a refused override's reason)."""
    if scope is None or key not in scope.overrides:
        return None
    value = scope.overrides[key]
    problem = _problem(key, value, kind)
    if problem is not None:
        scope.record(key, _Rejected(None, problem))
        return None
    scope.use_override(key, value)  # type: ignore[arg-type]
    return FlagResolutionDetails(
        value=value,
        reason=Reason.STATIC,
        variant=variant(value),  # type: ignore[arg-type]
        flag_metadata={"source": "override"},
    )


def _record(scope: Scope | None, key: str, details: FlagResolutionDetails[Any]) -> None:
    if scope is None:
        return
    entry = scope.seen.get(key)
    if type(entry) is _Rejected:  # keep the reason; the value is what the code got
        scope.record(key, _Rejected(details.value, entry.reason))
    else:
        scope.observe(key, details.value)


class FeatureFlagProvider(AbstractProvider):
    """An OpenFeature provider: per-request overrides first, then *inner* (or the default).

    Every evaluation made while serving a request is reported in ``Feature-Flags``
    with ``source=override`` or ``source=default``. An override of the wrong type is
    not applied; the report says why. Hooks, initialization, shutdown, tracking and
    events are the inner provider's.
    """

    def __init__(self, inner: FeatureProvider | None = None) -> None:
        super().__init__()
        self.inner = inner

    def get_metadata(self) -> Metadata:
        if self.inner is None:
            return Metadata(name="featureflag")
        return Metadata(name=f"featureflag over {self.inner.get_metadata().name}")

    def get_provider_hooks(self) -> list[Hook]:
        return [] if self.inner is None else self.inner.get_provider_hooks()

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self.inner is not None:
            self.inner.initialize(evaluation_context)

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        if self.inner is not None:
            self.inner.track(tracking_event_name, evaluation_context, tracking_event_details)

    def attach(
        self,
        on_emit: Callable[[FeatureProvider, ProviderEvent, ProviderEventDetails], None],
    ) -> None:
        super().attach(on_emit)
        if self.inner is not None:
            # The inner provider's events (ready, stale, configuration changed) are ours.
            self.inner.attach(lambda _inner, event, details: on_emit(self, event, details))

    def detach(self) -> None:
        super().detach()
        if self.inner is not None:
            self.inner.detach()

    def _resolve(
        self,
        kind: type,
        inner: _Resolve | None,
        key: str,
        default: Any,
        context: EvaluationContext | None,
    ) -> FlagResolutionDetails[Any]:
        scope = current_scope()
        found = _override(scope, key, kind)
        if found is not None:
            return found
        if inner is None:
            details: FlagResolutionDetails[Any] = FlagResolutionDetails(
                value=default, reason=Reason.DEFAULT
            )
        else:
            try:
                details = inner(key, default, context)
            except Exception:
                _record(scope, key, FlagResolutionDetails(value=default))
                raise
        _record(scope, key, details)
        return details

    async def _resolve_async(
        self,
        kind: type,
        inner: Callable[[str, Any, EvaluationContext | None], Awaitable[FlagResolutionDetails[Any]]]
        | None,
        key: str,
        default: Any,
        context: EvaluationContext | None,
    ) -> FlagResolutionDetails[Any]:
        scope = current_scope()
        found = _override(scope, key, kind)
        if found is not None:
            return found
        if inner is None:
            return self._resolve(kind, None, key, default, context)
        try:
            details = await inner(key, default, context)
        except Exception:
            _record(scope, key, FlagResolutionDetails(value=default))
            raise
        _record(scope, key, details)
        return details

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        inner = None if self.inner is None else self.inner.resolve_boolean_details
        return self._resolve(bool, inner, flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        inner = None if self.inner is None else self.inner.resolve_string_details
        return self._resolve(str, inner, flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        inner = None if self.inner is None else self.inner.resolve_integer_details
        return self._resolve(int, inner, flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        inner = None if self.inner is None else self.inner.resolve_float_details
        return self._resolve(float, inner, flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: _Object,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[_Object]:
        inner = None if self.inner is None else self.inner.resolve_object_details
        return self._resolve(dict, inner, flag_key, default_value, evaluation_context)

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        inner = None if self.inner is None else self.inner.resolve_boolean_details_async
        return await self._resolve_async(bool, inner, flag_key, default_value, evaluation_context)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        inner = None if self.inner is None else self.inner.resolve_string_details_async
        return await self._resolve_async(str, inner, flag_key, default_value, evaluation_context)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        inner = None if self.inner is None else self.inner.resolve_integer_details_async
        return await self._resolve_async(int, inner, flag_key, default_value, evaluation_context)

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        inner = None if self.inner is None else self.inner.resolve_float_details_async
        return await self._resolve_async(float, inner, flag_key, default_value, evaluation_context)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: _Object,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[_Object]:
        inner = None if self.inner is None else self.inner.resolve_object_details_async
        return await self._resolve_async(dict, inner, flag_key, default_value, evaluation_context)
