"""The refund's order, filled in by 0004, is required from now on (a migration of its own:
PostgreSQL refuses to alter a table with foreign-key checks still pending from 0004's
update in the same transaction)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0004_staff_refunds"),
    ]

    operations = [
        migrations.AlterField(
            model_name="refund",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="orders.order",
            ),
        ),
    ]
