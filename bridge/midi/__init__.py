"""MIDI: a controller steers the live controls, a MIDI clock drives the beat, LEDs follow it.

- :mod:`bridge.midi.mapping`: the mapping (a ``[midi]`` TOML table or ``--midi-map FILE``),
  validated against :mod:`osc_schema`: CCs to numeric controls, notes to triggers, program
  changes to presets.
- :mod:`bridge.midi.control`: applies MIDI messages through the same
  :class:`~engine.controls.ControlStore` path as OSC; MIDI learn.
- :mod:`bridge.midi.clock`: MIDI clock in (24 ppqn, start, stop, continue, song position) as a
  beat source.
- :mod:`bridge.midi.ports`: ports through mido and python-rtmidi (listing, opening, reopening
  after an unplug), notes out on beats.
- :mod:`bridge.midi.surface`: the pieces wired together for the daemon.
- :mod:`bridge.midi.learn`: ``hamba midi learn``, MIDI learn on a running daemon over OSC.
"""
