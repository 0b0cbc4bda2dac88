"""Top-k recommendations of a trained run, written as a tab-separated file::

    python -m recbole_hnlm.recommend --checkpoint saved/LightGCN-<time>.safetensors --k 20 --out recs.tsv
    python -m recbole_hnlm.recommend --checkpoint ... --users 196,186 --out recs.tsv --data_path=/data/atomic

The run is rebuilt with :func:`recbole_hnlm.load.load_data_and_model` (``--key=value`` settings override the
stored ones). Every item a user interacted with in the dataset (training, validation and test) is left out unless
``--keep_seen``, as is RecBole's padding item. Output, one line per (user, rank), in the dataset's own tokens::

    user_id<TAB>rank<TAB>item_id<TAB>score
"""
import argparse
import logging
import operator
import os
import sys
import unicodedata
from typing import List, Optional, Sequence

if __name__ == "__main__":  # `python -m`: the imports below (torch, seconds) load under the commands' signal handling
    from recbole_hnlm.signals import load_main

    sys.exit(load_main("recbole_hnlm.recommend")())

import torch
from tqdm import tqdm

from recbole_hnlm.cli_settings import parse_settings, parser_flags
from recbole_hnlm.errors import ConfigError, DataError, exit_status
from recbole_hnlm.files import atomic_path
from recbole_hnlm.signals import run_interruptible


def header(dataset) -> str:
    """The TSV's first line, named with the dataset's id fields (``user_id rank business_id score`` for Yelp)."""
    return f"{dataset.uid_field}\trank\t{dataset.iid_field}\tscore\n"


class SeenItems:
    """The items each user interacted with anywhere in a dataset, as CSR arrays (``offsets``, ``items``): memory
    grows with the interactions, not with users × items."""

    def __init__(self, dataset):
        users = dataset.inter_feat[dataset.uid_field].long()
        order = torch.argsort(users, stable=True)
        self.items = dataset.inter_feat[dataset.iid_field].long()[order]
        self.offsets = torch.zeros(dataset.user_num + 1, dtype=torch.long)
        self.offsets[1:] = torch.bincount(users, minlength=dataset.user_num).cumsum(0)

    def positions(self, users: torch.Tensor):
        """``(rows, items)``: row ``r`` of ``users`` has seen item ``items[j]`` wherever ``rows[j] == r``."""
        start = self.offsets[users]
        length = self.offsets[users + 1] - start
        rows = torch.repeat_interleave(torch.arange(len(users)), length)
        first = torch.repeat_interleave(start, length)
        within = torch.arange(len(rows)) - torch.repeat_interleave(length.cumsum(0) - length, length)
        return rows, self.items[first + within]


def top_k(model, users: torch.Tensor, k: int, seen: Optional[SeenItems] = None):
    """``(scores [U, k], item ids [U, k])`` of ``model.full_sort_predict`` for the internal ids ``users``, best
    first, equal scores in the order of the internal item ids (``topk`` leaves the order of ties unspecified: two
    machines could list them differently); ``k`` is capped at the number of real items. Left-out items (the padding
    item 0, and ``seen`` ones) score ``-inf``."""
    if isinstance(k, bool) or not hasattr(k, "__index__"):  # 2.5 was cut to 2; None got int()'s message
        raise TypeError(f"k must be an integer, got {k!r}")
    if operator.index(k) < 1:  # k <= 0 failed in the tie cut, with shape errors naming nothing
        raise ValueError(f"k must be >= 1, got {k}")
    n_items = model.n_items
    with torch.no_grad():
        score = model.full_sort_predict({model.USER_ID: users.to(model.device)}).view(len(users), n_items)
    score = score.float().cpu()
    if bool(score.isnan().any()):  # a diverged model: topk ranks NaN first, and the tie cut below cannot order it
        logging.getLogger(__name__).warning(
            "recommend: %d scores of %d users are NaN (training diverged, or a damaged checkpoint): those items are "
            "left out", int(score.isnan().sum()), int(score.isnan().any(1).sum()))
        score = score.nan_to_num(nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)
    score[:, 0] = -torch.inf
    if seen is not None:
        rows, seen_columns = seen.positions(users)
        score[rows, seen_columns] = -torch.inf
    k = min(int(k), n_items - 1)
    top = score.topk(k + 1, dim=1)  # one more than asked: a tie across the k-th place shows as an equal (k+1)-th
    values, items = top.values[:, :k], top.indices[:, :k]
    cut = (top.values[:, k] == top.values[:, k - 1]).nonzero()[:, 0]
    if len(cut):  # more items share the k-th score than places are left: the lowest ids among them
        rows, threshold = score[cut], top.values[cut, k - 1:k]
        above, tied = rows > threshold, rows == threshold
        chosen = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
        items = items.clone()
        items[cut] = chosen.nonzero()[:, 1].view(len(cut), k)
        values = score.gather(1, items)
    by_id = items.sort(dim=1)  # then by score, stably: equal scores keep the id order
    order = torch.sort(values.gather(1, by_id.indices), dim=1, descending=True, stable=True)
    return order.values, by_id.values.gather(1, order.indices)


def write_recommendations(path: str, model, dataset, user_ids: torch.Tensor, k: int, seen: Optional[SeenItems] = None,
                          batch_size: int = 1024, progress: bool = False) -> int:
    """Score ``user_ids`` batch by batch and write the TSV atomically (a temporary file, then rename; ``"-"``:
    standard output), in the dataset's tokens with ranks from 1; returns the number of lines. A user who has seen
    almost every item gets fewer than ``k`` lines (left-out items are never written)."""
    def write(out):
        lines = 0
        out.write(header(dataset))
        starts = range(0, len(user_ids), batch_size)
        for start in tqdm(starts, desc="recommend", unit="batch", disable=not progress):
            users = user_ids[start:start + batch_size]
            scores, items = top_k(model, users, k, seen)
            user_tokens = dataset.id2token(dataset.uid_field, users.numpy())
            item_tokens = dataset.id2token(dataset.iid_field, items.numpy())
            for user, row_items, row_scores in zip(user_tokens, item_tokens, scores.tolist()):
                for rank, (item, score) in enumerate(zip(row_items, row_scores), start=1):
                    if score != -float("inf"):
                        out.write(f"{user}\t{rank}\t{item}\t{score:.6g}\n")
                        lines += 1
        return lines

    if path == "-":
        return write(sys.stdout)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as out:
            return write(out)


def _user_ids(dataset, tokens: Optional[List[str]]) -> torch.Tensor:
    """Internal ids of ``tokens`` in their order (every user of the dataset, in RecBole's id order, when ``None``);
    unknown tokens, RecBole's padding user and an empty selection are errors."""
    if tokens is None:
        return torch.arange(1, dataset.user_num)
    if not tokens:
        raise ConfigError("--users/--users_file: no user tokens given.")
    known = dataset.field2token_id[dataset.uid_field]
    unknown = [token for token in tokens if known.get(token, 0) == 0]  # id 0 is RecBole's padding ([PAD])
    if unknown:
        forms = {token: {unicodedata.normalize(form, token) for form in ("NFC", "NFD")} for token in unknown[:5]}
        look_alike = {token: other for token, others in forms.items() for other in others
                      if other != token and known.get(other, 0)}
        hint = "".join(f" {ascii(token)} is the dataset's {ascii(other)} in another Unicode normalisation: write it "
                       "as the dataset does." for token, other in look_alike.items())
        raise ConfigError(f"--users: {len(unknown)} user(s) not in the dataset {dataset.dataset_name}, e.g. "
                          f"{', '.join(map(repr, unknown[:5]))}.{hint}")
    return torch.tensor([known[token] for token in tokens], dtype=torch.long)


def _read_users(args) -> Optional[List[str]]:
    if args.users is not None:
        return [token.strip() for token in args.users.split(",") if token.strip()]
    if args.users_file is not None:
        try:
            with open(args.users_file, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of a token
                return [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as error:  # a ValueError: it ended the command in a traceback
            raise ConfigError(f"--users_file: {args.users_file} is not UTF-8 text (byte "
                              f"{error.object[error.start:error.start + 1]!r}: {error.reason}); save it as UTF-8, "
                              "one user token per line.") from error
        except OSError as error:  # "[Errno 2] No such file or directory: 'x'" named no option
            raise ConfigError(f"--users_file: {args.users_file}: {error.strerror or error}") from error
    return None


_SPECIAL = ("is not a regular file (a device, pipe or standard stream, which the atomic write would replace by a "
            "file): give a file path, or - for standard output")


def _out_problem(path: str) -> Optional[str]:
    """Why the atomic write cannot go to ``path``, else ``None``: it, or a link on the way to its target, is a
    device, pipe, folder or standard stream (``/dev/stdout`` resolves through ``/proc/self/fd/1`` to whatever file the
    shell redirected to), or its links loop."""
    for _ in range(40):  # the kernel's limit on links followed
        path = os.path.abspath(path)
        if path.startswith(("/dev/", "/proc/")):
            return _SPECIAL
        if not os.path.islink(path):
            return _SPECIAL if os.path.exists(path) and not os.path.isfile(path) else None
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return "is a loop of symbolic links (or a chain of over 40): give a file path, or - for standard output"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                                     epilog="Other settings go in --key=value form (e.g. --data_path=DIR, --gpu_id=0, "
                                            "--show_progress=False) and override those stored in the checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of run_recbole_hnlm.py (.safetensors)")
    parser.add_argument("--out", required=True, help="output TSV file (written atomically; - for standard output)")
    parser.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--users", help="comma-separated user tokens, written in this order, repeats included "
                                     "(default: every user, in RecBole's id order)")
    who.add_argument("--users_file", help="a file with one user token per line (same rules)")
    parser.add_argument("--keep_seen", action="store_true", help="do not leave out items the user interacted with")
    parser.add_argument("--batch_size", type=int, default=1024, help="users scored per forward (default 1024)")
    args, extra = parser.parse_known_args(argv)
    if args.k < 1 or args.batch_size < 1:
        parser.error("--k and --batch_size must be >= 1")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a folder; give a file name")
    target = args.out if args.out == "-" else os.path.realpath(args.out)  # a link's target is written, not the link
    problem = None if target == "-" else _out_problem(args.out)
    if problem:
        parser.error(f"--out {args.out} {problem}")
    overrides = parse_settings(extra, parser.error, flags=parser_flags(parser))
    # the file is written atomically at the end; standard output line by line
    left = "the lines on standard output are incomplete" if target == "-" else f"nothing was written to {args.out}"
    return run_interruptible(lambda: _recommend(args, target, overrides), f"interrupted: {left}; rerun the command")


def _recommend(args, target: str, overrides: dict) -> int:
    """Load the run (RecBole's imports, the dataset: a minute at Yelp2018's size), score and write; ``main``'s exit
    status."""
    from recbole_hnlm.config import PROPERTIES_DIR
    from recbole_hnlm.config_checks import unknown_option_messages, unknown_options
    from recbole_hnlm.load import load_data_and_model

    for message in unknown_option_messages(unknown_options(overrides, PROPERTIES_DIR)):
        print(f"warning: {message}", file=sys.stderr)
    try:
        tokens = _read_users(args)
        if sys.stderr.isatty():  # a silent minute at Yelp2018's size; redirected, an error stays one line
            print(f"loading {args.checkpoint} and rebuilding its dataset", file=sys.stderr)
        config, model, dataset, *_ = load_data_and_model(args.checkpoint, overrides)
        user_ids = _user_ids(dataset, tokens)
        seen = None if args.keep_seen else SeenItems(dataset)
        lines = write_recommendations(target, model, dataset, user_ids, args.k, seen, batch_size=args.batch_size,
                                      progress=config["show_progress"])
    except BrokenPipeError:  # `--out - | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python exits
        return 0
    except (ConfigError, DataError, OSError) as error:  # OSError: FileNotFoundError (dataset, users file, --out)
        print(f"error: {error}", file=sys.stderr)
        return exit_status(error)  # a full disk is not bad input
    print(f"{'stdout' if args.out == '-' else args.out}: {lines} recommendations for {len(user_ids)} users (at most "
          f"{args.k} each)", file=sys.stderr if args.out == "-" else sys.stdout)
    return 0

