"""IdempotencyRecord moves from the api app to core (below both api and web, which share the
rule): in Django's state only; the table stays as it is (``api_idempotencyrecord``)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("api", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("scope", models.CharField(max_length=60)),
                        ("key", models.CharField(max_length=255)),
                        ("method", models.CharField(max_length=10)),
                        ("path", models.CharField(max_length=255)),
                        ("request_hash", models.CharField(max_length=64)),
                        (
                            "response_status",
                            models.PositiveSmallIntegerField(blank=True, null=True),
                        ),
                        ("response_body", models.TextField(blank=True)),
                        ("locked_until", models.DateTimeField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "api_idempotencyrecord",
                        "indexes": [
                            models.Index(
                                fields=["created_at"], name="api_idempot_created_d9784e_idx"
                            )
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("scope", "key"), name="api_idempotency_once"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
