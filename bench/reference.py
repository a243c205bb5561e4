#!/usr/bin/env python3
"""The general-engine reference of bench/test.sh: one hand-written statement computing the
aggregates of bench/orders.odcs.yaml's checks (counts, exact duplicate counts, patterns,
extremes) in a single query.

Usage: reference.py duckdb FILE.parquet | reference.py postgres DATABASE"""
import sys

AGGREGATES = """
  count(*) AS rows,
  count(*) FILTER (WHERE order_id IS NULL) AS order_id_nulls,
  count(*) FILTER (WHERE NOT regexp_matches(order_id, '^ORD-[0-9]{9}$')) AS order_id_pattern,
  count(*) FILTER (WHERE customer_id IS NULL) AS customer_id_nulls,
  count(*) FILTER (WHERE NOT regexp_matches(customer_email, '^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$')) AS email_invalid,
  count(*) FILTER (WHERE customer_email IS NULL OR customer_email IN ('', 'n/a')) AS email_missing,
  count(*) FILTER (WHERE status IS NULL) AS status_nulls,
  count(*) FILTER (WHERE status NOT IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')) AS status_invalid,
  count(*) FILTER (WHERE amount < 0) AS amount_min,
  count(*) FILTER (WHERE amount > 10000) AS amount_max,
  count(*) FILTER (WHERE length(currency) < 3) AS currency_min_len,
  count(*) FILTER (WHERE length(currency) > 3) AS currency_max_len,
  count(*) FILTER (WHERE currency NOT IN ('EUR', 'USD', 'GBP', 'CHF')) AS currency_invalid,
  count(*) FILTER (WHERE quantity < 1) AS quantity_min,
  count(*) FILTER (WHERE quantity > 100) AS quantity_max,
  count(*) FILTER (WHERE length(country) < 2) AS country_min_len,
  count(*) FILTER (WHERE length(country) > 2) AS country_max_len,
  count(*) FILTER (WHERE country IS NULL) AS country_nulls,
  count(*) FILTER (WHERE created_at IS NULL) AS created_nulls,
  count(*) FILTER (WHERE amount > 9990) AS large_amounts,
  max(created_at) AS newest,
  min(created_at) AS oldest,
  (SELECT count(*) FROM (SELECT order_id FROM {t} WHERE order_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d) AS order_id_dups,
  (SELECT count(*) FROM (SELECT country FROM {t} WHERE country IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d) AS country_dups,
  (SELECT count(*) FROM (SELECT order_id, customer_id FROM {t} WHERE order_id IS NOT NULL AND customer_id IS NOT NULL
     GROUP BY 1, 2 HAVING count(*) > 1) d) AS pair_dups
FROM {t}"""


def main():
    engine, target = sys.argv[1], sys.argv[2]
    if engine == "duckdb":
        import duckdb
        t = f"read_parquet('{target}')"
        print(duckdb.sql("SELECT" + AGGREGATES.replace("{t}", t)).fetchall())
    else:
        import psycopg
        sql = ("SELECT" + AGGREGATES.replace("{t}", "orders")).replace("regexp_matches(order_id, ", "(order_id ~ ") \
            .replace("regexp_matches(customer_email, ", "(customer_email ~ ")
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=target) as conn:
            cur = conn.cursor()
            cur.execute(sql)
            print(cur.fetchall())


if __name__ == "__main__":
    main()
