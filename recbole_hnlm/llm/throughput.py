"""What the LLM stages take on a CPU, for the warnings before a long stage: the rates docs/llm.md measures
("Throughput", SmolLM2-135M on 2 CPU cores) and a rough duration in words."""
import torch

#: Profiles per second (eq. 2-3; item 0.13, user 0.10) and semantic hard negatives per second (eq. 4-5).
CPU_PROFILES_PER_SECOND = 0.12
CPU_SEMANTIC_PAIRS_PER_SECOND = 0.4
#: LLM answers above which a stage without a GPU is announced as long (2,000 answers: 1.4 to 4.6 hours).
LONG_CPU_ANSWERS = 2000


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
