// The OpenAPI document `headwater serve --demo` answers at GET / (SQLite), trimmed to what the
// console reads: paths and their POST bodies (where the required columns are), and the schemas.
// Regenerate from a running server when the document's shape changes.

export const headwaterDemoOpenApi: unknown = {
  "openapi": "3.0.3",
  "info": {
    "title": "Headwater",
    "version": "0.1.0",
    "description": "Every table and view, served in PostgREST's dialect."
  },
  "paths": {
    "/customer_totals": {
      "get": {}
    },
    "/customers": {
      "get": {},
      "post": {
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "oneOf": [
                  {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/customers"
                      },
                      {
                        "required": [
                          "name",
                          "email",
                          "created_at"
                        ]
                      }
                    ]
                  },
                  {
                    "type": "array",
                    "items": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/customers"
                        },
                        {
                          "required": [
                            "name",
                            "email",
                            "created_at"
                          ]
                        }
                      ]
                    }
                  }
                ]
              }
            },
            "text/csv": {
              "schema": {
                "type": "string"
              }
            }
          }
        }
      },
      "patch": {},
      "put": {},
      "delete": {}
    },
    "/order_items": {
      "get": {},
      "post": {
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "oneOf": [
                  {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/order_items"
                      },
                      {
                        "required": [
                          "order_id",
                          "product_id",
                          "quantity",
                          "unit_price"
                        ]
                      }
                    ]
                  },
                  {
                    "type": "array",
                    "items": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/order_items"
                        },
                        {
                          "required": [
                            "order_id",
                            "product_id",
                            "quantity",
                            "unit_price"
                          ]
                        }
                      ]
                    }
                  }
                ]
              }
            },
            "text/csv": {
              "schema": {
                "type": "string"
              }
            }
          }
        }
      },
      "patch": {},
      "put": {},
      "delete": {}
    },
    "/orders": {
      "get": {},
      "post": {
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "oneOf": [
                  {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/orders"
                      },
                      {
                        "required": [
                          "customer_id",
                          "ordered_at"
                        ]
                      }
                    ]
                  },
                  {
                    "type": "array",
                    "items": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/orders"
                        },
                        {
                          "required": [
                            "customer_id",
                            "ordered_at"
                          ]
                        }
                      ]
                    }
                  }
                ]
              }
            },
            "text/csv": {
              "schema": {
                "type": "string"
              }
            }
          }
        }
      },
      "patch": {},
      "put": {},
      "delete": {}
    },
    "/products": {
      "get": {},
      "post": {
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "oneOf": [
                  {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/products"
                      },
                      {
                        "required": [
                          "name",
                          "sku",
                          "price"
                        ]
                      }
                    ]
                  },
                  {
                    "type": "array",
                    "items": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/products"
                        },
                        {
                          "required": [
                            "name",
                            "sku",
                            "price"
                          ]
                        }
                      ]
                    }
                  }
                ]
              }
            },
            "text/csv": {
              "schema": {
                "type": "string"
              }
            }
          }
        }
      },
      "patch": {},
      "put": {},
      "delete": {}
    }
  },
  "components": {
    "schemas": {
      "customer_totals": {
        "type": "object",
        "properties": {
          "customer_id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "nullable": true
          },
          "name": {
            "type": "string",
            "x-db-type": "text",
            "format": "text",
            "nullable": true
          },
          "order_count": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "nullable": true
          },
          "total_spent": {
            "type": "number",
            "x-db-type": "real",
            "format": "real",
            "nullable": true
          }
        },
        "description": "A view."
      },
      "customers": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Primary Key.<pk/>"
          },
          "name": {
            "type": "string",
            "x-db-type": "text",
            "format": "text"
          },
          "email": {
            "type": "string",
            "x-db-type": "varchar(200)",
            "format": "varchar(200)",
            "maxLength": 200
          },
          "country": {
            "type": "string",
            "x-db-type": "varchar(2)",
            "format": "varchar(2)",
            "nullable": true,
            "maxLength": 2
          },
          "created_at": {
            "type": "string",
            "format": "timestamp",
            "x-db-type": "timestamp"
          },
          "is_active": {
            "type": "boolean",
            "x-db-type": "boolean",
            "format": "boolean"
          },
          "referred_by": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "nullable": true,
            "description": "Note:\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>"
          }
        }
      },
      "order_items": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Primary Key.<pk/>"
          },
          "order_id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Foreign Key to `orders.id`.<fk table='orders' column='id'/>"
          },
          "product_id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Foreign Key to `products.id`.<fk table='products' column='id'/>"
          },
          "quantity": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer"
          },
          "unit_price": {
            "type": "number",
            "x-db-type": "numeric(10, 2)",
            "format": "numeric(10, 2)"
          }
        }
      },
      "orders": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Primary Key.<pk/>"
          },
          "customer_id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Foreign Key to `customers.id`.<fk table='customers' column='id'/>"
          },
          "status": {
            "type": "string",
            "x-db-type": "varchar(16)",
            "format": "varchar(16)",
            "maxLength": 16
          },
          "ordered_at": {
            "type": "string",
            "format": "timestamp",
            "x-db-type": "timestamp"
          },
          "shipped_on": {
            "type": "string",
            "format": "date",
            "x-db-type": "date",
            "nullable": true
          },
          "note": {
            "type": "string",
            "x-db-type": "text",
            "format": "text",
            "nullable": true
          },
          "total": {
            "type": "number",
            "x-db-type": "numeric(12, 2)",
            "format": "numeric(12, 2)"
          }
        }
      },
      "products": {
        "type": "object",
        "properties": {
          "id": {
            "type": "integer",
            "x-db-type": "integer",
            "format": "integer",
            "description": "Note:\nThis is a Primary Key.<pk/>"
          },
          "name": {
            "type": "string",
            "x-db-type": "text",
            "format": "text"
          },
          "sku": {
            "type": "string",
            "x-db-type": "varchar(32)",
            "format": "varchar(32)",
            "maxLength": 32
          },
          "price": {
            "type": "number",
            "x-db-type": "numeric(10, 2)",
            "format": "numeric(10, 2)"
          },
          "weight_kg": {
            "type": "number",
            "x-db-type": "real",
            "format": "real",
            "nullable": true
          },
          "in_stock": {
            "type": "boolean",
            "x-db-type": "boolean",
            "format": "boolean"
          },
          "released_on": {
            "type": "string",
            "format": "date",
            "x-db-type": "date",
            "nullable": true
          },
          "attributes": {
            "nullable": true
          }
        }
      }
    }
  }
}
