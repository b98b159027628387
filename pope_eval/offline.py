"""Whether the Hugging Face Hub can be reached, asked once per process before any Hub download.

Without it an offline machine spends 25-54 s in the Hub clients' retries before failing;
`hub_unreachable()` answers in at most a few seconds and callers turn that into one clear line.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 4.0
_TRUE = ("1", "ON", "YES", "TRUE")
_answers: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: it answers)


def hub_endpoint() -> str:
    """The Hub's base URL (HF_ENDPOINT, as the Hugging Face clients read it)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """Whether the user switched the Hub clients to their local caches (HF_HUB_OFFLINE, or
    TRANSFORMERS_OFFLINE as huggingface_hub also reads it)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def hub_unreachable(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the Hub cannot be used now ('HF_HUB_OFFLINE is set', 'Connection refused', ...), or
    None when it answers. One HEAD request to the endpoint (any HTTP answer counts, an error
    status included), proxies taken from the environment as the Hub clients take them; asked
    once per process and endpoint, waiting at most `timeout` seconds (name lookup included)."""
    if offline_mode():
        return "HF_HUB_OFFLINE is set"
    endpoint = hub_endpoint()
    if endpoint not in _answers:
        _answers[endpoint] = _probe(endpoint, timeout)
        if _answers[endpoint] is not None:
            log.info("Hugging Face Hub %s unreachable: %s", endpoint, _answers[endpoint])
    return _answers[endpoint]


def _probe(endpoint: str, timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    answer: list[str | None] = [f"no answer within {timeout:g} s"]

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                                   timeout=timeout).close()
            answer[0] = None
        except urllib.error.HTTPError:  # an error status is still an answer
            answer[0] = None
        except urllib.error.URLError as exc:
            answer[0] = _reason(exc.reason)
        except (OSError, ValueError) as exc:  # a timeout, a malformed HF_ENDPOINT
            answer[0] = _reason(exc)

    # In a thread: a name lookup that hangs is not bounded by the request's timeout.
    thread = threading.Thread(target=ask, name="pope-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answer[0]


def _reason(exc: object) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(text.split()) or type(exc).__name__
