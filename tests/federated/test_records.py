"""The /rounds table: fixed columns, then every score any round has, NaN where a round was not evaluated; a row
read back (a checkpoint's) gives the same record."""
import numpy as np

from hpcsynth.federated.records import RoundRecord


def test_scores_become_columns_and_rows_read_back_into_records():
    records = [RoundRecord(0, 2.0, 1.0, 0.8, 0.2, 100, 5),
               RoundRecord(1, 1.5, 1.1, 0.9, 0.2, 100, 5, eval_s=0.3, scores={"quality": 0.9, "csf": 0.8})]
    table = RoundRecord.table(records)
    assert table.dtype.names[-3:] == ("eval_s", "quality", "csf")
    assert np.isnan(table["quality"][0]) and table["csf"][1] == 0.8
    back = [RoundRecord.from_row(row) for row in table]
    assert back[1] == records[1] and back[0].scores == {} and np.isnan(back[0].eval_s)
    again = RoundRecord.table(back)
    assert all(np.array_equal(again[name], table[name], equal_nan=True) for name in table.dtype.names)


def test_a_table_without_the_newer_columns_still_reads():
    old = np.array([(0, 2.0, 1.0, 0.8, 0.2, 100, 5, 0.0)],
                   dtype=[("round", "<i8"), ("loss", "<f8"), ("wall_s", "<f8"), ("compute_s", "<f8"),
                          ("comm_s", "<f8"), ("bytes_reduced", "<i8"), ("steps", "<i8"), ("epsilon", "<f8")])
    record = RoundRecord.from_row(old[0])
    assert record.round == 0 and np.isnan(record.eval_s) and record.scores == {}
