"""Beat sources: what drives the picture's beat (audio analysis, Ableton Link, MIDI clock).

One source drives at a time. :mod:`bridge.beats.base` holds the small interface a clock-like
source implements (a beat position at a wall-clock time) and the arithmetic that turns it into
a frame's beat fields; :mod:`bridge.beats.synced` wraps the daemon's music source so that the
beat, beat phase, bar phase and tempo come from the chosen source while energy, onsets and
chroma still come from the music.
"""
