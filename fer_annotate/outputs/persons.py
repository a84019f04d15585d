"""Fill a finished temporary table's person_id column from its face_id column (persons are known only
once the whole video is done, after the rows were written)."""

import csv
from pathlib import Path


def fill_csv(source: Path, target: Path, persons: dict[int, int]) -> None:
    """Copy a CSV table line by line, person_id set from face_id; the other cells keep their exact text."""
    with open(source, newline="") as src, open(target, "w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n")
        header = next(reader)
        writer.writerow(header)
        face, person = header.index("face_id"), header.index("person_id")
        for row in reader:
            if row[face]:
                row[person] = str(persons.get(int(row[face]), int(row[face])))
            writer.writerow(row)


def fill_parquet(source: Path, target: Path, persons: dict[int, int]) -> None:
    """Copy a Parquet table batch by batch, person_id set from face_id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_file = pq.ParquetFile(source)
    schema = table_file.schema_arrow
    person = schema.get_field_index("person_id")
    writer = pq.ParquetWriter(target, schema)
    try:
        for batch in table_file.iter_batches():
            faces = batch.column("face_id").to_pylist()
            ids = [None if f is None else persons.get(f, f) for f in faces]
            column = pa.array(ids, type=schema.field(person).type)
            writer.write_table(pa.Table.from_batches([batch]).set_column(person, schema.field(person), column))
    finally:
        writer.close()
