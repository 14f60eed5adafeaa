"""The OSC address space of hambaMetal: one source of truth, importable without torch.

``controls`` holds the live controls model, ``schema`` every address derived from it (and the
addresses the engine sends), ``export`` the JSON, Markdown and OSCQuery forms.
"""
