"""Subscriptions: the model, routing rules, parsing (app reply, YAML) and the saved list.

* :mod:`~edge_runtime.subscriptions.model`: :class:`Subscription`, :func:`route_for`;
* :mod:`~edge_runtime.subscriptions.rules`: the CEL-subset compiler for ``match`` rules;
* :mod:`~edge_runtime.subscriptions.parse`: :func:`from_app_json`, :func:`from_resources`;
* :mod:`~edge_runtime.subscriptions.store`: :func:`save` / :func:`load` in the data dir.
"""

from edge_runtime.subscriptions.model import (
    BulkSettings,
    RouteRule,
    Subscription,
    SubscriptionType,
    route_for,
    subscription_key,
)
from edge_runtime.subscriptions.parse import combine, from_app_json, from_object, from_resources
from edge_runtime.subscriptions.rules import Rule, RuleError, compile_rule
from edge_runtime.subscriptions.store import FILE_NAME, SubscriptionFileError, load, save

__all__ = [
    "FILE_NAME",
    "BulkSettings",
    "RouteRule",
    "Rule",
    "RuleError",
    "Subscription",
    "SubscriptionFileError",
    "SubscriptionType",
    "combine",
    "compile_rule",
    "from_app_json",
    "from_object",
    "from_resources",
    "load",
    "route_for",
    "save",
    "subscription_key",
]
