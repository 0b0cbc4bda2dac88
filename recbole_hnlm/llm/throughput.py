"""What the LLM stages take on a CPU, for the warnings before a long stage: the rates docs/llm.md measures
("Throughput", SmolLM2-135M on 2 CPU cores) and a rough duration in words."""
import os
from typing import Optional

import torch

#: Profiles per second (eq. 2-3; item 0.13, user 0.10) and semantic hard negatives per second (eq. 4-5).
CPU_PROFILES_PER_SECOND = 0.12
CPU_SEMANTIC_PAIRS_PER_SECOND = 0.4
#: LLM answers above which a stage without a GPU is announced as long (2,000 answers: 1.4 to 4.6 hours).
LONG_CPU_ANSWERS = 2000


#: A 1-minute load average above the usable cores by more than this, as an LLM stage starts with torch's default
#: threads on a CPU, is announced: threads spin-waiting for cores other jobs hold made the main command's embedding
#: 5x slower with 2 threads than with 1 (17 against 90 pairs/s under a load of 5 on 2 cores; docs/llm.md).
BUSY_LOAD_MARGIN = 0.5


def busy_machine_hint(threads: int, load: Optional[float], cores: Optional[int]) -> Optional[str]:
    """The warning for an LLM stage about to run ``threads`` torch threads on ``cores`` usable cores whose 1-minute
    load average is ``load`` (this process's own work included), or None when the machine is not busier than its
    cores or a single thread runs."""
    if threads <= 1 or load is None or not cores or load <= cores + BUSY_LOAD_MARGIN:
        return None
    return (f"the machine is busy (load average {load:.1f} on {cores} cores) and the LLM stage runs {threads} torch "
            "threads, which wait for cores other jobs hold: it can be several times slower than with one thread. "
            "hnlm_threads=1 (--hnlm_threads=1) makes it use one")


def machine_load() -> Optional[float]:
    """The 1-minute load average, None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def usable_cores() -> Optional[int]:
    """The cores this process may run on (its CPU affinity where the system has one, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def long_on_this_machine(answers: int) -> bool:
    """Whether ``answers`` LLM answers make a stage worth announcing (many of them, and no GPU)."""
    return answers > LONG_CPU_ANSWERS and not torch.cuda.is_available()


def rough_duration(seconds: float) -> str:
    """``"about 6 hours"``, ``"about 37 days"``: the order of magnitude a user plans by (``"less than a minute"``
    under 30 s: a teacher's last epoch read "about 1 minute left" with half a second to go)."""
    if seconds < 30:
        return "less than a minute"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 1.5 * size or unit == "minute":
            count = max(1, round(seconds / size))
            return f"about {count} {unit}{'s' * (count != 1)}"
