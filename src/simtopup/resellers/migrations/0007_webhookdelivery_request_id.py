"""The request that caused an outgoing webhook, sent as its X-Request-Id (core/requestid.py).

A column with a constant default: PostgreSQL adds it without rewriting the table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("resellers", "0006_partner_credentials"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
