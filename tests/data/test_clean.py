from bertc.data.clean import clean
from bertc.data.load import TextDataset


def test_clean_counts_every_kind_of_problem():
    data = TextDataset(
        texts=["  a  good   film ", "a good film", "", None, "bad", "bad", "meh", "ok"],
        labels=[1, 1, 0, 1, 0, 1, None, 0])
    cleaned, report = clean(data)
    assert cleaned.texts == ["a good film", "bad", "bad", "ok"]
    assert cleaned.labels == [1, 0, 1, 0]
    assert (report.rows_in, report.empty_text, report.missing_label, report.duplicates) == (8, 2, 1, 1)
    assert report.conflicting_texts == 1 and report.conflict_examples == ["bad"]
    assert report.rows_out == 4


def test_pairs_are_part_of_the_duplicate_key():
    data = TextDataset(texts=["a", "a"], pairs=["x", "y"], labels=[0, 0])
    cleaned, report = clean(data)
    assert len(cleaned) == 2 and report.duplicates == 0


def test_duplicates_are_kept_when_not_dropped():
    data = TextDataset(texts=["a  film", "a film", "", "a film"], labels=[1, 1, 0, 0])
    cleaned, report = clean(data, drop_duplicates=False)
    assert cleaned.texts == ["a film", "a film", "a film"] and cleaned.labels == [1, 1, 0]
    assert (report.empty_text, report.duplicates, report.rows_out) == (1, 0, 3)
    assert report.conflicting_texts == 1  # still counted
