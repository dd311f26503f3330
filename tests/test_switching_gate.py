"""The switching gate: live power is switched only with --allow-switching and a person's yes."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.clock import SimClock
from harness.devices.prompts import NonInteractive, PromptService, Terminal
from harness.safety.switching import switching_refusal


@dataclass
class Person:
    """Stands in for the engineer at the terminal: answers each question with the next line."""

    answers: list[str]
    shown: list[str] = field(default_factory=list)

    def __call__(self) -> Terminal:
        return self

    def write(self, text: str) -> None:
        self.shown.append(text)

    def readline(self, timeout_s: float) -> str | None:
        return self.answers.pop(0) if self.answers else None

    def close(self) -> None:
        pass


def _gate(person: Person | None, *, virtual: bool = False, allowed: bool = True) -> str | None:
    def nobody() -> Terminal:
        raise NonInteractive("no controlling terminal")

    prompts = PromptService(SimClock(), timeout_s=1.0, terminal=person or nobody)
    return switching_refusal("test_islanding", virtual=virtual, allowed=allowed, prompts=prompts)


def test_a_virtual_site_switches_without_a_question():
    person = Person([])
    assert _gate(person, virtual=True, allowed=False) is None
    assert person.shown == []


def test_a_live_site_needs_the_flag_before_anyone_is_asked():
    person = Person([""])
    refusal = _gate(person, allowed=False)
    assert refusal is not None and "--allow-switching" in refusal
    assert person.shown == []


def test_a_live_site_with_the_flag_asks_and_runs_on_yes():
    person = Person([""])
    assert _gate(person) is None
    assert any("test_islanding is about to switch live power" in text for text in person.shown)


def test_the_person_can_refuse():
    refusal = _gate(Person(["abort"]))
    assert refusal is not None and "declined" in refusal


def test_no_answer_or_no_terminal_refuses():
    silent = _gate(Person([]))
    assert silent is not None and "no answer" in silent
    nobody = _gate(None)
    assert nobody is not None and "non-interactive" in nobody
