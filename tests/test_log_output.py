"""Console colour codes are stripped only where the console is not a terminal."""
import io
import logging

import colorlog
from recbole.utils import set_color

from recbole_hnlm.log_output import _is_terminal, plain_when_redirected


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _recbole_console(stream) -> logging.Logger:
    """A logger with a console handler formatted as RecBole's ``init_logger`` formats its own."""
    logger = logging.getLogger(f"test_log_output.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(asctime)-15s %(levelname)s  %(message)s",
                                                   "%d %b %H:%M", log_colors={"INFO": "green"}))
    logger.addHandler(handler)
    return logger


def test_a_redirected_console_gets_plain_lines_and_a_terminal_keeps_its_colours():
    redirected, terminal = io.StringIO(), _Terminal()
    for stream in (redirected, terminal):
        logger = _recbole_console(stream)
        plain_when_redirected(logger)
        plain_when_redirected(logger)  # twice changes nothing more
        assert len(logger.handlers[0].filters) == (stream is redirected)
        logger.info(set_color("[Training]: ", "pink") + "train_batch_size = 2048")
    assert "\x1b[" not in redirected.getvalue() and "INFO  [Training]: train_batch_size = 2048" in redirected.getvalue()
    assert logger.handlers[0].formatter.datefmt == "%d %b %H:%M"  # RecBole's date format kept: "05 Dec 21:39 INFO"
    assert "\x1b[" in terminal.getvalue()


def test_file_handlers_are_left_alone(tmp_path):
    logger = _recbole_console(io.StringIO())
    file_handler = logging.FileHandler(tmp_path / "run.log")
    formatter = file_handler.formatter
    logger.addHandler(file_handler)
    plain_when_redirected(logger)
    assert file_handler.filters == [] and file_handler.formatter is formatter
    file_handler.close()


def test_a_closed_or_unknown_stream_counts_as_redirected():
    closed = io.StringIO()
    closed.close()
    assert _is_terminal(closed) is False and _is_terminal(object()) is False and _is_terminal(_Terminal()) is True
