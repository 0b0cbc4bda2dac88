"""Console log lines without colour codes when the console is not a terminal (``> stage.log``, a pipe): RecBole
colours parts of its messages (``set_color``) whatever the stream. Its ``init_logger`` has colorama strip them from
a redirected stream, but the LLM command line and the grid's cells log through handlers of their own, so a
redirected stage read as ``^[[1;35m[Training]: ^[[0m...``. Log files are plain already (RecBole's filter)."""
import logging

import colorlog
from recbole.utils.logger import RemoveColorFilter

__all__ = ["plain_when_redirected"]

#: RecBole's console line without its ``%(log_color)s``.
PLAIN_FORMAT = "%(asctime)-15s %(levelname)s  %(message)s"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def plain_when_redirected(logger: logging.Logger = None) -> None:
    """Strip colour codes from the console handlers of ``logger`` (the root logger by default) whose stream is not a
    terminal: colorlog's level colours (the formatter becomes :data:`PLAIN_FORMAT` with the same date format) and
    the codes inside messages. Handlers on a terminal and file handlers are left as they are; calling it twice
    changes nothing more."""
    for handler in (logger or logging.getLogger()).handlers:
        if type(handler) is not logging.StreamHandler or _is_terminal(handler.stream):
            continue
        if isinstance(handler.formatter, colorlog.ColoredFormatter):
            handler.setFormatter(logging.Formatter(PLAIN_FORMAT, handler.formatter.datefmt))
        if not any(isinstance(f, RemoveColorFilter) for f in handler.filters):
            handler.addFilter(RemoveColorFilter())
