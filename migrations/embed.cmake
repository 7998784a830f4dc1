# Writes OUT, a C file holding every DIR/NNNN_*.sql as a byte array, so that
# dacld carries its schema and never reads the source tree at run time.
# cmake -DDIR=migrations -DOUT=migrations.c -P embed.cmake
file(GLOB sqls "${DIR}/[0-9][0-9][0-9][0-9]_*.sql")
list(SORT sqls)
set(arrays "")
set(table "")
set(i 0)
foreach(f ${sqls})
  get_filename_component(name "${f}" NAME_WE)
  string(SUBSTRING "${name}" 0 4 num)
  math(EXPR version "${num}")
  # hex, not a string literal: SQL may hold quotes, backslashes and any byte
  file(READ "${f}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "static const char sql_${i}[] = {${bytes}0x00};\n")
  string(APPEND table "    {${version}, \"${name}\", sql_${i}},\n")
  math(EXPR i "${i} + 1")
endforeach()
if(i EQUAL 0)
  message(FATAL_ERROR "no migrations in ${DIR}")
endif()
file(WRITE "${OUT}.tmp"
  "/* generated from migrations/NNNN_*.sql by migrations/embed.cmake: do not edit */\n"
  "#include \"store.h\"\n\n"
  "${arrays}\n"
  "const StoreMigration store_migrations[] = {\n${table}};\n"
  "const int store_migration_count = ${i};\n")
# only touch OUT when it changed, so an unchanged schema recompiles nothing
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
