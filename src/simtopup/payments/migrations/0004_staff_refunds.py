"""Refunds by staff (payments/staff_refunds.py): several refunds per payment (a foreign key,
no longer one-to-one), each naming its order (a refund of an order paid from the card's
credit has no payment), where the money goes (the provider or the card's credit), who asked
and why (up to 500 characters). Existing refunds, all automatic and through the provider,
get their payment's order."""

import django.db.models.deletion
from django.db import migrations, models


def fill_orders(apps, schema_editor):
    refund_model = apps.get_model("payments", "Refund")
    payment_model = apps.get_model("payments", "Payment")
    for refund in refund_model.objects.filter(order__isnull=True).only("pk", "payment_id"):
        order_id = payment_model.objects.values_list("order_id", flat=True).get(
            pk=refund.payment_id
        )
        refund_model.objects.filter(pk=refund.pk).update(order_id=order_id)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_orders_permanent_leaner_indexes"),
        ("payments", "0003_payment_attempts"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="destination",
            field=models.CharField(
                choices=[("provider", "provider"), ("credit", "card credit")],
                default="provider",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="order",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="orders.order",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="requested_by",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterField(
            model_name="refund",
            name="payment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="payments.payment",
            ),
        ),
        migrations.AlterField(
            model_name="refund",
            name="reason",
            field=models.CharField(max_length=500),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("destination", "credit"), ("payment__isnull", False), _connector="OR"
                ),
                name="payments_refund_provider_has_payment",
            ),
        ),
        migrations.RunPython(fill_orders, migrations.RunPython.noop),
    ]
