"""Payment attempts: an order may be paid again another way after a declined attempt.

``order`` loses its uniqueness (every attempt keeps its order) and ``current_for`` points at
the order's latest attempt (``order.payment``, as before). In place: every existing payment
is its order's one attempt, so ``current_for`` is its ``order``.
"""

import django.db.models.deletion
from django.db import migrations, models


def current_is_the_one(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Payment.objects.update(current_for=models.F("order"))


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_orders_permanent_leaner_indexes"),
        ("payments", "0002_event_flagged_for_review"),
    ]

    operations = [
        migrations.AlterField(
            model_name="payment",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payments",
                to="orders.order",
            ),
        ),
        migrations.AddField(
            model_name="payment",
            name="current_for",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="payment",
                to="orders.order",
            ),
        ),
        migrations.RunPython(current_is_the_one, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name="payment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "pending")),
                fields=("order",),
                name="payments_one_pending_attempt_per_order",
            ),
        ),
        migrations.AddConstraint(
            model_name="payment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("current_for__isnull", True),
                    ("current_for", models.F("order")),
                    _connector="OR",
                ),
                name="payments_current_attempt_of_its_order",
            ),
        ),
    ]
