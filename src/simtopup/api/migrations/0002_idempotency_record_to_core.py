"""IdempotencyRecord now lives in core (see core/migrations/0001): the api app forgets it in
Django's state only; the table is core's now, unchanged."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("api", "0001_initial"), ("core", "0001_idempotency_record_from_api")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyRecord")],
            database_operations=[],
        ),
    ]
