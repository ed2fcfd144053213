"""Messages a person must read: kept across auto-refreshes until dismissed or the next action."""

from __future__ import annotations

from typing import Literal

import streamlit as st

Level = Literal["success", "info", "warning", "error"]


def say(key: str, level: Level, text: str) -> None:
    """Keep `text` under `key` until dismissed or replaced; a refresh does not drop it."""
    st.session_state[key] = (level, text)


def clear(key: str) -> None:
    """Forget the message under `key` (the next action, or Dismiss)."""
    st.session_state.pop(key, None)


def show(key: str) -> None:
    """The message under `key`, if any, with a Dismiss button."""
    note = st.session_state.get(key)
    if note is None:
        return
    level, text = note
    getattr(st, level)(text)
    st.button("Dismiss", key=f"{key}_dismiss", on_click=clear, args=(key,), type="tertiary")
