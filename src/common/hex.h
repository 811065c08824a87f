/* hex.h: the value of one hexadecimal digit, for the decoders of percent-escapes and keys. */
#ifndef IT_COMMON_HEX_H
#define IT_COMMON_HEX_H

/* Returns the value (0-15) of the hexadecimal digit c, either case, or -1
 * when c is not one. Inline, so that the parsers that link nothing else
 * (src/parse/, the fuzz targets) can use it too. */
static inline int it_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
