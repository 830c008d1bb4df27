"""Bearer-token authentication: which requests may pass, compared in constant time."""

import hmac


class TokenCheck:
    """The tokens from `API_TOKENS`; with none configured every request passes."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [token.encode() for token in tokens]

    def status(self, authorization: bytes | None) -> int | None:
        """None when the request may pass, 401 without a bearer token, 403 with a wrong one."""
        if not self._tokens:
            return None
        scheme, _, token = (authorization or b"").strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return 401
        # Compare against every token, whatever matches, so timing tells nothing about which.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(known, token)
        return None if matched else 403
