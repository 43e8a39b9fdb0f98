"""``bindings.cron`` (Dapr's): input events on a schedule. ``schedule`` parses Dapr's syntax
(pure); ``binding`` is the component."""

from edge_runtime.bindings.cron.binding import CronBinding, CronMetadata, create
from edge_runtime.bindings.cron.schedule import CronSpec, Every, parse

__all__ = ["CronBinding", "CronMetadata", "CronSpec", "Every", "create", "parse"]
