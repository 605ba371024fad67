"""Operations on a deployed platform: `bem backup` and `bem restore`.

`redis_data` copies Redis keys type-blind (DUMP / RESTORE with their TTLs); `archive` packs
those keys and the shared data directory into one tar.gz and unpacks it again.
"""
