"""The customer pages of the website: my devices, top up, order status, history, credit.

Thin views: Django forms check the shape of the input, the domain functions the app API uses
(devices.binding, orders.customer, usage.autotopup, orders.receipts) do the work, and their
errors are shown next to the field they concern.
"""
