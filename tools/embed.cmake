# Writes a C source defining `const char NAME[]` (NUL-terminated) and `const size_t NAME_len` with the bytes of
# IN, so that a file edited as HTML ships inside the binary. Run as: cmake -DIN=... -DOUT=... -DNAME=... -P
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from ${IN} by tools/embed.cmake: edit that file. */\n#include <stddef.h>\n"
     "const char ${NAME}[] = {\n${bytes}0x00};\nconst size_t ${NAME}_len = ${len};\n")
