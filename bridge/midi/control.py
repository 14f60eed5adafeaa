"""MIDI messages applied to the live controls, through the same path as OSC.

:meth:`MidiControl.on_message` is the one entry point (mido's rtmidi callback calls it, on
rtmidi's thread). Each change becomes the OSC message it stands for, checked by
:func:`osc_schema.schema.parse_message`, and goes to :meth:`ControlStore.update`: validated,
applied between frames, latest wins, exactly as ``/hamba/blend 0.4`` from TouchOSC would be.
There is no second path to the engine.

- control change: the bound control, scaled to its schema range (see
  :class:`~bridge.midi.mapping.CcBinding`). With soft takeover (the default) a knob whose
  position disagrees with the control's value (moved by OSC, a preset, another knob) changes
  nothing until it reaches or crosses that value, so the picture never jumps.
- note on (velocity > 0): a trigger: pause toggle, next or previous preset, reseed (a random
  seed in the schema's range), a chroma prompt set.
- program change n: preset n (``[midi.program]``, else the n-th preset of the schema).
- clock, start, stop, continue, song position: the :class:`~bridge.midi.clock.MidiClock`.
- MIDI learn: :meth:`MidiControl.learn` binds the next CC moved to a control.

A message that cannot apply (an unmapped CC is only logged at debug level) is a rate-limited
warning naming the MIDI message; nothing here raises into rtmidi's thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge.midi.clock import MidiClock
from bridge.midi.mapping import (
    CcBinding,
    MidiMap,
    NoteBinding,
    cc_target,
    control_address,
    preset_choices,
)
from bridge.osc.throttle import LogThrottle
from engine.controls import ControlStore
from engine.errors import ControlError
from osc_schema.schema import OscSchemaError, lookup, parse_arguments, parse_message

log = logging.getLogger(__name__)

CLOCK_MESSAGES = frozenset({"clock", "start", "stop", "continue", "songpos"})

Learned = Callable[[CcBinding], None]


def binding_toml(binding: CcBinding) -> str:
    """A binding as the ``[[midi.cc]]`` lines to paste into a mapping file."""
    lines = ["[[midi.cc]]", f"cc = {binding.cc}", f'control = "{binding.control}"']
    if binding.channel is not None:
        lines.append(f"channel = {binding.channel}")
    return "\n".join(lines)


class MidiControl:
    """Applies a :class:`MidiMap` to a :class:`ControlStore`; feeds a MIDI clock if given."""

    def __init__(
        self,
        store: ControlStore,
        mapping: MidiMap,
        *,
        clock: MidiClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.mapping = mapping
        self.clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cc: list[CcBinding] = list(mapping.cc)
        self._learning: tuple[str, Learned | None] | None = None
        # soft takeover, per binding: the knob's last position, the value it last applied
        self._last_cc: dict[tuple[int, int | None], int] = {}
        self._applied: dict[tuple[int, int | None], Any] = {}
        self._throttle = LogThrottle(log)
        self.applied = 0
        self.ignored = 0

    @property
    def bindings(self) -> tuple[CcBinding, ...]:
        """The CC bindings now (the mapping's, plus what MIDI learn added)."""
        with self._lock:
            return tuple(self._cc)

    @property
    def learning(self) -> str | None:
        """The address waiting for its CC, or None."""
        pending = self._learning
        return pending[0] if pending is not None else None

    # -- the entry point --------------------------------------------------------------------

    def on_message(self, message: Any, at: float | None = None) -> None:
        """Handle one mido message (``at``: arrival, ``time.monotonic()``); never raises."""
        at = time.monotonic() if at is None else at
        kind = getattr(message, "type", "?")
        try:
            if kind in CLOCK_MESSAGES:
                if self.clock is not None:
                    self.clock.handle(kind, at, getattr(message, "pos", None))
            elif kind == "control_change":
                self._control_change(message.channel + 1, message.control, message.value)
            elif kind == "note_on" and message.velocity > 0:
                self._note(message.channel + 1, message.note)
            elif kind == "program_change":
                self._program(message.channel + 1, message.program)
        except ControlError as exc:
            self._throttle.warning("midi: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not reach rtmidi's thread
            self._throttle.log(logging.ERROR, "midi: %s failed: %s", message, exc, exc_info=True)

    # -- learn ------------------------------------------------------------------------------

    def learn(self, control: str, on_learned: Learned | None = None) -> str:
        """Bind the next CC moved to ``control`` (address or name); its address.

        ``on_learned`` is called with the new binding (on the MIDI thread). An empty
        ``control`` cancels a pending learn. ControlError names an unknown control.
        """
        if not control:
            with self._lock:
                self._learning = None
            log.info("midi learn: cancelled")
            return ""
        try:
            address = cc_target(control).address
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        with self._lock:
            self._learning = (address, on_learned)
        log.info("midi learn: move a knob or fader for %s", address)
        return address

    def _bind(self, channel: int, cc: int, address: str, on_learned: Learned | None) -> None:
        binding = CcBinding(cc=cc, control=address, channel=channel)
        with self._lock:
            # the new binding replaces every one this CC on this channel would have driven
            self._cc = [b for b in self._cc if not self._matches(b, channel, cc)]
            self._cc.append(binding)
            self._learning = None
        log.info(
            "midi learn: CC %d on channel %d -> %s; for the mapping file:\n%s",
            cc,
            channel,
            address,
            binding_toml(binding),
        )
        if on_learned is not None:
            on_learned(binding)

    # -- messages ---------------------------------------------------------------------------

    def _matches(self, binding: CcBinding, channel: int, cc: int) -> bool:
        wanted = binding.channel or self.mapping.channel
        return binding.cc == cc and (wanted is None or wanted == channel)

    def _find_cc(self, channel: int, cc: int) -> CcBinding | None:
        return next((b for b in self._cc if self._matches(b, channel, cc)), None)

    def _control_change(self, channel: int, cc: int, value: int) -> None:
        with self._lock:
            pending = self._learning
            binding = None if pending is not None else self._find_cc(channel, cc)
        if pending is not None:
            self._bind(channel, cc, *pending)
            return
        if binding is None:
            self.ignored += 1
            log.debug("midi: CC %d on channel %d is not mapped", cc, channel)
            return
        key = (binding.cc, binding.channel)
        entry = binding.target
        assert entry.control is not None
        if binding.takeover == "soft" and entry.arguments[0].tag != "T":
            current = getattr(self.store.values, entry.control)
            last = self._last_cc.get(key)
            self._last_cc[key] = value
            if self._applied.get(key) != current:
                # not this knob's value (first touch, or OSC, a preset or another knob moved
                # it): apply only once the knob meets or crosses it
                target = binding.position(current)
                crossed = last is not None and (last - target) * (value - target) <= 0
                if not (crossed or abs(value - target) <= 1.0):
                    self.ignored += 1
                    return
        source = f"MIDI CC {cc} (channel {channel}) -> {binding.control}"
        values = self._apply(binding.control, binding.value(value), source)
        self._applied[key] = getattr(values, entry.control)
        self._last_cc[key] = value

    def _note(self, channel: int, note: int) -> None:
        binding = self._find_note(channel, note)
        if binding is None:
            log.debug("midi: note %d on channel %d is not mapped", note, channel)
            return
        source = f"MIDI note {note} (channel {channel}) -> {binding.action}"
        values = self.store.values
        if binding.action == "pause":
            self._apply(control_address("pause"), not values.pause, source)
        elif binding.action in ("next_preset", "previous_preset"):
            choices = preset_choices()
            step = 1 if binding.action == "next_preset" else -1
            index = choices.index(values.preset) if values.preset in choices else 0
            self._apply(control_address("preset"), choices[(index + step) % len(choices)], source)
        elif binding.action == "reseed":
            argument = lookup(control_address("seed")).arguments[0]
            low, high = int(argument.minimum or 0), int(argument.maximum or 2**31 - 1)
            self._apply(control_address("seed"), self._rng.randint(low, high), source)
        elif binding.action == "chroma_set":
            assert binding.set is not None
            self._apply_chroma_set(self.mapping.chroma_sets[binding.set], source)

    def _find_note(self, channel: int, note: int) -> NoteBinding | None:
        default = self.mapping.channel
        for binding in self.mapping.note:
            wanted = binding.channel or default
            if binding.note == note and (wanted is None or wanted == channel):
                return binding
        return None

    def _program(self, channel: int, program: int) -> None:
        mapping = self.mapping.program
        choices = preset_choices()
        preset = mapping.get(program) if mapping is not None else None
        if preset is None and mapping is None and program < len(choices):
            preset = choices[program]
        if preset is None:
            raise ControlError(f"MIDI program change {program} (channel {channel}): no preset")
        self._apply(control_address("preset"), preset, f"MIDI program {program} -> preset")

    # -- the one way in ---------------------------------------------------------------------

    def _apply(self, address: str, value: Any, source: str) -> Any:
        """``address value`` as OSC would set it: schema check, then the store."""
        try:
            changes = parse_message(address, [value], self.store.values)
        except OscSchemaError as exc:
            raise ControlError(f"{source}: {exc.reason}") from None
        values = self.store.update(changes, source=source)
        self.applied += 1
        return values

    def _apply_chroma_set(self, prompts: tuple[str, ...], source: str) -> None:
        # every prompt as /hamba/prompt/chroma/<i> would check it, then one atomic update
        base = control_address("chroma_prompts")
        try:
            items = tuple(parse_arguments(f"{base}/{i}", [p])[0] for i, p in enumerate(prompts))
        except OscSchemaError as exc:
            raise ControlError(f"{source}: {exc}") from None
        self.store.update({"chroma_prompts": items}, source=source)
        self.applied += 1
