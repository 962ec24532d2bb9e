"""API tokens on a real database: stored as their SHA-256 only, found by the token, nothing else matches."""

from sqlalchemy import text

from service.auth import TokenStore


def test_tokens_are_stored_hashed(api):
    tokens = TokenStore(api.store)
    token = tokens.create("alice")
    assert tokens.owner_of(token) == "alice" and tokens.owner_of(token + "x") is None
    with api.store.engine.connect() as conn:
        hashes = [row[0] for row in conn.execute(text("select token_hash from api_tokens"))]
    assert token not in hashes and len(hashes[-1]) == 64
