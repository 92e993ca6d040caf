from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "simtopup.catalog"
    label = "catalog"
    verbose_name = "Catalog"
