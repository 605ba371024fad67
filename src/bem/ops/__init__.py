"""Operations on a deployed platform: `bem backup` and `bem restore`.

`redis_data` copies Redis keys type-blind (DUMP / RESTORE with their TTLs); `archive` packs
those keys and the shared data directory into one tar.gz and unpacks it again, checking
all of it before writing anything; `data_files` checks and stages the data directory's
members of a restore.
"""
