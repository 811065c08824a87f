/* list.h: intrusive doubly linked lists; unlinking is O(1) and allocates nothing. */
#ifndef IT_COMMON_LIST_H
#define IT_COMMON_LIST_H

#include <stddef.h>

typedef struct it_list {
	struct it_list *prev, *next;
} it_list;

#define it_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void it_list_init(it_list *head)
{
	head->prev = head->next = head;
}

static inline int it_list_empty(const it_list *head)
{
	return head->next == head;
}

/* Links node at the tail of the list headed by head. */
static inline void it_list_push(it_list *head, it_list *node)
{
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

/* Unlinks node and leaves it self-linked, so unlinking twice is harmless. */
static inline void it_list_unlink(it_list *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = node;
}

#define it_list_foreach_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#endif
