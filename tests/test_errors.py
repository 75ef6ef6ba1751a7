"""BertcError: the one exception for problems the user can fix, kept apart from the built-in error types."""

from __future__ import annotations

import pytest

from bertc.errors import BertcError


def test_bertc_error_is_its_own_type_and_keeps_message_and_cause():
    # The CLI turns only BertcError into a one-line message; a bug (ValueError, KeyError...) must not be caught
    # as one, so BertcError may not derive from the built-in error types.
    assert BertcError.__bases__ == (Exception,)
    assert not isinstance(ValueError("x"), BertcError)
    with pytest.raises(BertcError) as err:
        try:
            {}["missing"]
        except KeyError as cause:
            raise BertcError("--data x.tsv does not exist") from cause
    assert str(err.value) == "--data x.tsv does not exist"
    assert isinstance(err.value.__cause__, KeyError)
