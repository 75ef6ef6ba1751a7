"""Fixtures of the compression tests."""

import pytest

from bertc.modeling import load_pretrained_classifier


@pytest.fixture(params=["bert", "roberta"])
def classifier(request, tiny_bert_dir, tiny_roberta_dir):
    source = tiny_bert_dir if request.param == "bert" else tiny_roberta_dir
    return load_pretrained_classifier(str(source), ["0", "1"])
