"""The quantization methods: each method config type -> the handler that applies it (torchao's registry style).

A handler registers itself with ``@register_quantize_handler(MyConfig)`` (see ``bertc.export.quantizers``);
``bertc.export.quantize.quantize_`` and the `bertc quantize` stage dispatch on ``type(method_config)``. This is
a leaf module, so handlers and the stage can both import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from bertc.errors import BertcError

QUANTIZE_HANDLERS: dict[type, type] = {}


def register_quantize_handler(config_type: type) -> Callable[[type], type]:
    """Decorator: the handler class quantizes with configs of ``config_type``."""

    def register(handler: type) -> type:
        QUANTIZE_HANDLERS[config_type] = handler
        return handler

    return register


def handler_for(method) -> type:
    """The handler class registered for ``type(method)``; a one-line error when there is none."""
    handler = QUANTIZE_HANDLERS.get(type(method))
    if handler is None:
        known = ", ".join(config.__name__ for config in QUANTIZE_HANDLERS) or "none"
        raise BertcError(f"no quantization handler is registered for {type(method).__name__}; registered method "
                         f"configs: {known}")
    return handler
